# One place for the commands a user types. Data: the shared CIFAR-10 shards when this checkout has them,
# else torchvision downloads into data/ (override with GAN_DATA_ROOT=DIR).
PY ?= .venv/bin/python
EXP ?= baseline
SHARED := $(abspath ../shared/data/cifar10)
export GAN_DATA_ROOT ?= $(if $(wildcard $(SHARED)/train-*.npz),$(SHARED),data)

.PHONY: install train test bench bench-quality tensorboard screenshot

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'

train:
	$(PY) -m gan train $(EXP) $(ARGS)

test:
	$(PY) -m pytest -q $(PYTEST_ARGS)

tensorboard:
	$(PY) -m tensorboard.main --logdir logs --host 127.0.0.1 --port $${PORT:-6006}

# Speed, levers, metric cost, FID check, memory; report in bench-out/, exit 1 when a target is missed
# (ARGS="--quick", "--sections speed,levers", "--device cuda").
bench:
	$(PY) -m gan.bench $(ARGS)

# A headless-Chromium picture of TensorBoard's scalars page for the runs under logs/ (apt-get install chromium).
screenshot:
	$(PY) -m gan screenshot --logs logs --out $${OUT:-tensorboard.png}

# dcgan vs sngan for the same training time (train.minutes), FID/KID and images seen side by side (a script, not
# a test): ARGS="--minutes 10 --exps dcgan,sngan".
bench-quality:
	$(PY) -m gan.bench.quality $(ARGS)
