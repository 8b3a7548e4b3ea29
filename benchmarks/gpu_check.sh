#!/usr/bin/env bash
# The CUDA checks in one script: the CUDA-only tests, the two speed benchmarks and the feature-cache
# benchmark on the GPU, and end-to-end runs of the default job in fp32, bf16 and under torchrun
# (one process, NCCL), of a timm backbone at its pretrained input size, and of a sweep shared by
# workers (workers=2, launcher=submitit locally). Run
# from the repo root on a machine with a GPU, after `pip install -e ".[test]"`:
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]      # default LOG_DIR: out/gpu_check
#
# Each step's output goes to the terminal and to LOG_DIR/gpu_check.log; a failing step is reported
# and the script goes on, so one run gives every figure it can. Exit status: the number of failed steps.
set -u -o pipefail
LOG_DIR=${1:-out/gpu_check}
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu_check.log"
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME COMMAND...: run, time, log
    local name=$1; shift
    echo "=== $name: $*" | tee -a "$LOG"
    local t0=$SECONDS
    if "$@" 2>&1 | tee -a "$LOG"; then
        echo "=== $name: ok, $((SECONDS - t0)) s" | tee -a "$LOG"
    else
        echo "=== $name: FAILED (exit $?), $((SECONDS - t0)) s" | tee -a "$LOG"
        failed=$((failed + 1))
    fi
}

step machine bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc;
  python -c "import torch, timm, mmengine, numba; print(\"torch\", torch.__version__, \"timm\", timm.__version__,
  \"mmengine\", mmengine.__version__, \"numba\", numba.__version__, torch.cuda.get_device_name())"'
# the whole fast suite on a CUDA machine: device=auto now means CUDA, and the CUDA-only tests run
step tests timeout 300 python -m pytest -q -rs -p no:cacheprovider -m "not slow"
for precision in fp32 bf16; do
    step "train_speed-resnet18-$precision" python benchmarks/train_speed.py --device cuda --batch 128 \
        --precision "$precision"
done
step train_speed-resnet50-bf16 python benchmarks/train_speed.py --device cuda --backbone resnet50 --batch 128 \
    --precision bf16
step eval_speed python benchmarks/eval_speed.py --device cuda
step run-fp32 hashbench run methods=dsrh device=cuda "out=$LOG_DIR/run_fp32"
step run-bf16 hashbench run methods=dsrh device=cuda train.precision=bf16 "out=$LOG_DIR/run_bf16"
step run-torchrun-nccl torchrun --standalone --nproc-per-node=1 -m hashbench.cli run methods=dsrh bits=32 \
    device=cuda launcher=pytorch "out=$LOG_DIR/run_nccl"
# DPSH's bank and the released-code sampler through the launcher on CUDA (a few epochs: the path, not scores)
step run-torchrun-dpsh-released torchrun --standalone --nproc-per-node=1 -m hashbench.cli run \
    methods=dpsh,dsrh_released bits=32 epochs=3 device=cuda launcher=pytorch "out=$LOG_DIR/run_nccl_more"
# the method contract's four plugin families on CUDA: their state (bank, centres, learned codes) and
# explicit tuples on the device
step run-plugin-families hashbench run methods=plugin_bank,plugin_tuples,plugin_centres,plugin_asym \
    plugins=tests/plugins/bank_plugin.py,tests/plugins/tuples_plugin.py,tests/plugins/centres_plugin.py,tests/plugins/asym_plugin.py \
    bits=16 epochs=3 device=cuda "out=$LOG_DIR/run_plugins"
# the modern catalogue on CUDA (a few epochs: the path, not scores): state on the device (centres,
# codewords, learned database codes, discrete B/W updates), the codes' BatchNorm as SyncBatchNorm under
# the launcher, histogram losses
step run-catalogue hashbench run methods=dhn,dsdh,dch,adsh,idhn,dfh,greedyhash,csq,dpn,orthohash,mihash,talr \
    bits=32 epochs=3 device=cuda "out=$LOG_DIR/run_catalogue"
step run-torchrun-orthohash torchrun --standalone --nproc-per-node=1 -m hashbench.cli run methods=orthohash,adsh \
    bits=32 epochs=3 device=cuda launcher=pytorch "out=$LOG_DIR/run_nccl_catalogue"
# DSRH as released on CUDA (a few epochs: the path): torchvision AlexNet resizing the canvases to 224
# on the device, the released sampler's rows in order, its balance scaling, dropout and head init;
# then the same under the launcher (rows sharded per global batch)
step run-dsrh-as-released hashbench run methods=dsrh_as_released backbone.type=torchvision backbone.name=alexnet \
    bits=64 epochs=2 train.batch_size=128 method.balance_count=1 device=cuda "out=$LOG_DIR/run_as_released"
step run-torchrun-dsrh-as-released torchrun --standalone --nproc-per-node=1 -m hashbench.cli run \
    methods=dsrh_as_released bits=32 epochs=2 method.balance_count=1 device=cuda launcher=pytorch \
    "out=$LOG_DIR/run_nccl_as_released"
# backbone.input_size on CUDA: a timm model at its pretrained geometry (224, bicubic) resizing the 32 px
# canvases on the device, and the standard crop at that size — on each batch on the GPU
# (train.augment_on=auto is device on CUDA); then the same with the crops in the loader, for the
# time per epoch of each place
step run-timm-input-size hashbench run methods=dsrh backbone.name=resnet18 backbone.input_size=pretrained \
    train.augment=standard bits=32 epochs=2 device=cuda "out=$LOG_DIR/run_input_size"
step run-timm-input-size-loader hashbench run methods=dsrh backbone.name=resnet18 backbone.input_size=pretrained \
    train.augment=standard bits=32 epochs=2 device=cuda train.augment_on=loader "out=$LOG_DIR/run_input_size_loader"
# a sweep shared by workers on CUDA: two workers on this machine (one GPU each, round robin when there
# is one), then the submitit path with its local executor, one GPU per task
step run-workers hashbench run methods=dsrh,dpsh,itq bits=16,32 epochs=3 device=cuda workers=2 \
    "out=$LOG_DIR/run_workers"
step run-submitit-local hashbench run methods=dsrh,dpsh bits=16,32 epochs=3 device=cuda launcher=submitit \
    submit.cluster=local submit.tasks=2 submit.gpus_per_task=1 submit.wait=true "out=$LOG_DIR/run_submitit"
step feature_cache python benchmarks/feature_cache.py --device cuda
echo "gpu_check: $failed failed step(s); log in $LOG" | tee -a "$LOG"
exit "$failed"
