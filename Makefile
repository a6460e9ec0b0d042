# One place for the commands a user types. Data: the shared CIFAR-10 shards when this checkout has them,
# else torchvision downloads into data/ (override with GAN_DATA_ROOT=DIR).
PY ?= .venv/bin/python
EXP ?= baseline
SHARED := $(abspath ../shared/data/cifar10)
export GAN_DATA_ROOT ?= $(if $(wildcard $(SHARED)/train-*.npz),$(SHARED),data)

.PHONY: install train test bench bench-quality tensorboard screenshot sweep-timing sweep-evidence

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

bench:
	$(PY) -m gan.bench $(ARGS)

# A headless-Chromium picture of TensorBoard's scalars page for the runs under logs/ (apt-get install chromium).
screenshot:
	$(PY) -m gan screenshot --logs logs --out $${OUT:-tensorboard.png}

# dcgan vs sngan for the same number of steps, FID/KID side by side (a script, not a test).
bench-quality:
	$(PY) -m gan.bench_quality $(ARGS)

# gan sweep's long checks (scripts, not tests): --jobs 2 vs the same 4 runs one after another (ratio ≤ 1.1 wanted;
# measure on a quiet machine), and a real sweep of smoke at 1,000 steps over optim.g_lr × loss.name, 3 seeds.
sweep-timing:
	$(PY) -m gan.sweep.evidence timing $(ARGS)

sweep-evidence:
	$(PY) -m gan.sweep.evidence real $(ARGS)
