# One place for the commands a user types. Data: the shared CIFAR-10 shards when this checkout has them,
# else torchvision downloads into data/ (override with GAN_DATA_ROOT=DIR).
PY ?= .venv/bin/python
EXP ?= baseline
SHARED := $(abspath ../shared/data/cifar10)
export GAN_DATA_ROOT ?= $(if $(wildcard $(SHARED)/train-*.npz),$(SHARED),data)

.PHONY: install train test kills bench bench-quality tensorboard screenshot

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'

train:
	$(PY) -m gan train $(EXP) $(ARGS)

test:
	$(PY) -m pytest -q $(PYTEST_ARGS)

# 20 SIGKILLs of one run at random moments (steps, evaluations, checkpoint writes, between the renames), each
# followed by `gan resume`: it must end bit for bit where an uninterrupted run ends (`make test` runs 5).
# GAN_KILLS=N for another count, GAN_KILLS_SEED=S to repeat a plan.
kills:
	GAN_KILLS=$${GAN_KILLS:-20} $(PY) -m pytest -q -s tests/test_kills.py

tensorboard:
	$(PY) -m tensorboard.main --logdir logs --host 127.0.0.1 --port $${PORT:-6006}

bench:
	$(PY) -m gan.bench $(ARGS)

# A headless-Chromium picture of TensorBoard's scalars page for the runs under logs/ (apt-get install chromium).
screenshot:
	$(PY) -m gan screenshot --logs logs --out $${OUT:-tensorboard.png}

# dcgan vs sngan for the same number of steps, FID/KID side by side (a script, not a test).
bench-quality:
	$(PY) -m gan.bench_quality $(ARGS)
