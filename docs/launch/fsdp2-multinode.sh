#!/usr/bin/env bash
# Sharded training with FSDP2 (dralign's own path, `--sharding fsdp2`) on N nodes x 8 GPUs.
# Run the same command on every node, NODE_RANK 0..N-1, MASTER_ADDR = node 0's address:
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash docs/launch/fsdp2-multinode.sh \
#       --model Qwen/Qwen2.5-7B-Instruct --data prefs.jsonl --method kldpo --output-dir /shared/runs/kldpo
#
# which runs, on each node:
#   torchrun --nnodes 2 --nproc-per-node 8 --node-rank $NODE_RANK --master-addr 10.0.0.1 --master-port 29500 \
#       -m dralign.cli train --sharding fsdp2 --mixed-precision bf16 --model ... --output-dir /shared/runs/kldpo
#
# Each decoder layer, then the root, is sharded over all N x 8 processes (cuda + nccl; on CPU the same
# code runs over gloo: `ACCELERATE_USE_CPU=true torchrun --nproc-per-node 2 ...`, which the tests do).
# Every process loads the full weights first (the reference log-probs are computed before sharding),
# so the model must fit on one GPU; the optimizer state and the gradients are sharded during training.
# --output-dir (and --ref-cache-dir) must be on a file system every node sees: process 0 writes the
# reference cache, the checkpoints (full weights and optimizer state, gathered) and the final model;
# every process reads them (--resume continues a sharded run). Tested on CPU only (2 processes, gloo):
# no GPU has been lent to this project yet.
set -euo pipefail
: "${NNODES:?set NNODES, the number of nodes}"
: "${NODE_RANK:?set NODE_RANK, this node's rank (0..NNODES-1)}"
: "${MASTER_ADDR:?set MASTER_ADDR, node 0's address}"
exec torchrun --nnodes "$NNODES" --nproc-per-node "${GPUS_PER_NODE:-8}" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "${MASTER_PORT:-29500}" \
    -m dralign.cli train --sharding fsdp2 --mixed-precision bf16 "$@"
