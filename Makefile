# One place for the commands a user types. Every target that runs the project builds the virtual environment
# first when it is missing (a file target: a second call does not reinstall). Data: the shared CIFAR-10 shards when
# this checkout has them, else torchvision downloads into data/ (override with GAN_DATA_ROOT=DIR).
PY := .venv/bin/python
VENV := .venv/.installed
EXP ?= baseline
SHARED := $(abspath ../shared/data/cifar10)
export GAN_DATA_ROOT ?= $(if $(wildcard $(SHARED)/train-*.npz),$(SHARED),data)

.PHONY: install chromium train test test-long tensorboard bench bench-quality screenshot kills sweep-timing sweep-evidence \
	soak gpu-check

$(VENV): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip uninstall -q -y gan 2>/dev/null || true  # the distribution's name before gan-tracker
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV) chromium

# Headless Chromium for `gan screenshot` and its test: installed where this user may (root with apt-get),
# else one line saying how.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for gan screenshot"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: the screenshot test will skip (CI fails without it)"; \
	else echo "no chromium: gan screenshot needs it (Debian: sudo apt-get install chromium)"; fi

train: $(VENV)
	$(PY) -m gan train $(EXP) $(ARGS)

test: $(VENV) chromium
	$(PY) -m pytest -q -m "not long" $(PYTEST_ARGS)

# The tests marked `long` (stress loops, the soak's and gpu-check's own runs): minutes each, not in CI.
test-long: $(VENV) chromium
	$(PY) -m pytest -q -m long $(PYTEST_ARGS)

tensorboard: $(VENV)
	$(PY) -m tensorboard.main --logdir logs --host 127.0.0.1 --port $${PORT:-6006}

# Speed, levers, metric cost, FID check, memory; report in bench-out/, exit 1 when a target is missed
# (ARGS="--quick", "--sections speed,levers", "--device cuda").
bench: $(VENV)
	$(PY) -m gan.bench $(ARGS)

# A headless-Chromium picture of TensorBoard's scalars page for the runs under logs/.
screenshot: $(VENV) chromium
	$(PY) -m gan screenshot --logs logs --out $${OUT:-tensorboard.png}

# gan sweep's long checks (scripts, not tests): --jobs 2 vs the same 4 runs one after another (ratio ≤ 1.1 wanted;
# measure on a quiet machine), and a real sweep of smoke at 1,000 steps over optim.g_lr × loss.name, 3 seeds.
sweep-timing: $(VENV)
	$(PY) -m gan.sweep.evidence timing $(ARGS)

sweep-evidence: $(VENV)
	$(PY) -m gan.sweep.evidence real $(ARGS)

# 20 SIGKILLs at random moments, each resumed; the final state equals an unbroken run's bit for bit (make test-long
# runs 5; CI kills once, in tests/test_robustness.py and tests/test_summary.py).
kills: $(VENV)
	GAN_KILLS=20 $(PY) -m pytest -q tests/test_kills.py $(PYTEST_ARGS)

# dcgan vs sngan for the same training time (train.minutes), FID/KID and images seen side by side (a script, not
# a test): ARGS="--minutes 10 --exps dcgan,sngan".
bench-quality: $(VENV)
	$(PY) -m gan.bench.quality $(ARGS)

# A long run that must stay as it started (a script, not a test; not in CI): a tiny model trains 100,000 steps at
# best's logging cadence, watched every 10,000 (RSS, steps/s, events, checkpoints, run.json, the checkpoint's lists,
# the time a resume takes to its first step); report in bench-out/, exit 1 when a figure grows without need. Hours on
# a busy 2-core CPU; ARGS="--steps 20000 --every 2000" for a short one.
soak: $(VENV)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m gan.bench.soak $(ARGS)

# Every figure the README leaves open for a GPU, in one command (< 8 minutes on one GPU; ARGS="--profile tiny" runs
# it on this CPU in seconds). No venv needed: on a GPU machine it runs on the Python that has torch (README, Speed).
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m gan.bench.gpu_check $(ARGS)
