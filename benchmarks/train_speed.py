"""Images per second of a DSRH training step against a plain classification step, in one run.

Both steps use the same backbone architecture and initialisation, the same batch of images, the
same optimiser (AdamW) and the same device; they differ only in what sits on top of the backbone:

- classification: a linear classifier on the pooled final feature and a multi-label
  binary cross-entropy loss — the cheapest thing one trains on such a backbone;
- DSRH: the hash head (final + bypass branch), the sigmoid relaxation and DSRH's loss on *all*
  in-batch triplets (an (B, B, B) computation) plus the bit-balance term.

Each step is forward + loss + backward + optimiser step. The two are timed in alternating rounds
(after a warm-up), so that a shared machine's drift hits both alike; the per-step time is the
median over rounds (the best round is printed too: on a busy shared machine it is the steadier).
The target of the project (issue 6) is DSRH ≤ 1.3× the classification step's time: the in-batch
triplets must not dominate.

    python benchmarks/train_speed.py                            # resnet18, batch 64, 64x64, CPU
    python benchmarks/train_speed.py --device cuda --image-size 224 --batch 128
    python benchmarks/train_speed.py --device cuda --precision bf16   # both steps under autocast
    python benchmarks/train_speed.py --loss-only                # the DSRH loss alone (fwd + bwd)

With ``--precision bf16|fp16`` (CUDA) both networks run their forward pass under ``torch.autocast``
(the losses stay in fp32);
fp16 also scales the loss with a ``GradScaler``, as ``train.precision=fp16`` does in training.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn


class Classifier(nn.Module):
    """Backbone + linear classifier on the pooled final feature; normalises like DeepHasher."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.dims[0], n_classes)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float().div_(255.0) - self.mean) / self.std
        return self.fc(self.backbone(x)[0])


def synthetic_batch(batch, image_size, n_classes, device, seed=0):
    """uint8 images (B, 3, S, S) and multi-hot labels (B, C) with 1-4 labels each, like multidigits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, image_size, image_size), generator=g, dtype=torch.uint8)
    y = torch.zeros(batch, n_classes)
    for i in range(batch):
        k = int(torch.randint(1, 5, (1,), generator=g))
        y[i, torch.randperm(n_classes, generator=g)[:k]] = 1
    return x.to(device), y.to(device)


def make_steps(args, device):
    from hashbench.model import DeepHasher
    from hashbench.registry import BACKBONES, METHODS, build

    def backbone():
        torch.manual_seed(0)  # the same initialisation for both models
        return build(BACKBONES, dict(type="timm", name=args.backbone))

    method = build(METHODS, dict(type="dsrh"), n_bits=args.bits)
    hasher = DeepHasher.for_method(backbone(), method).to(device).train()
    classifier = Classifier(backbone(), args.classes).to(device).train()
    if args.channels_last:
        hasher, classifier = (m.to(memory_format=torch.channels_last) for m in (hasher, classifier))
    opt_h = torch.optim.AdamW(hasher.parameters(), lr=1e-4)
    opt_c = torch.optim.AdamW(classifier.parameters(), lr=1e-4)
    bce = nn.BCEWithLogitsLoss()
    amp = args.precision != "fp32"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float16
    scalers = [torch.amp.GradScaler(device.type, enabled=args.precision == "fp16") for _ in range(2)]

    def stepper(net, loss_fn, opt, scaler):
        def step(x, y):
            with torch.autocast(device.type, dtype=dtype, enabled=amp):  # the network only,
                z = net(x)
            loss = loss_fn(z.float(), y)                                   # the loss in fp32, as in training
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return step

    dsrh_step = stepper(hasher, lambda z, y: method.loss(method.relax(z, 0.0), y)["loss"], opt_h, scalers[0])
    classification_step = stepper(classifier, bce, opt_c, scalers[1])

    return method, dict(classification=classification_step, dsrh=dsrh_step)


def time_rounds(steps: dict, x, y, device, *, warmup, rounds, per_round):
    """Median seconds per step of each function, timed in alternating rounds after a warm-up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in steps.values():
        for _ in range(warmup):
            fn(x, y)
    sync()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn(x, y)
            sync()
            times[name].append((time.perf_counter() - t0) / per_round)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18", help="timm model name (random init)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=None, help="default 64 on CPU, 224 on CUDA")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA, off for CPU")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="autocast dtype of both steps' forward pass (CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--loss-only", action="store_true", help="time only the DSRH loss, forward + backward")
    args = p.parse_args(argv)

    from hashbench.device import resolve_device

    device = resolve_device(args.device)
    if args.precision != "fp32" and device.type != "cuda":
        p.error(f"--precision {args.precision} needs a CUDA device; valid on {device}: fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.image_size is None:
        args.image_size = 224 if device.type == "cuda" else 64
    if args.channels_last is None:
        args.channels_last = device.type == "cuda"
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"train_speed: {args.backbone}, batch {args.batch}, {args.image_size}x{args.image_size}, "
          f"{args.bits} bits, device {device} ({where}), {args.precision}, channels_last {args.channels_last}, "
          f"torch {torch.__version__}")
    x, y = synthetic_batch(args.batch, args.image_size, args.classes, device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    if args.loss_only:
        from hashbench.registry import METHODS, build

        method = build(METHODS, dict(type="dsrh"), n_bits=args.bits)
        z = torch.randn(args.batch, args.bits, device=device, requires_grad=True)

        def loss_step(_x, _y):
            z.grad = None
            method.loss(method.relax(z, 0.0), _y)["loss"].backward()

        t = time_rounds(dict(dsrh_loss=loss_step), x, y, device, warmup=args.warmup, rounds=args.rounds,
                        per_round=args.per_round * 10)["dsrh_loss"]
        print(f"DSRH loss alone (B={args.batch}, fwd+bwd): {statistics.median(t) * 1e3:.2f} ms "
              f"(min {min(t) * 1e3:.2f}, max {max(t) * 1e3:.2f})")
        return

    _, steps = make_steps(args, device)
    times = time_rounds(steps, x, y, device, warmup=args.warmup, rounds=args.rounds, per_round=args.per_round)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in times.items():
        print(f"  {name:<15} {args.batch / med[name]:8.1f} images/s   {med[name] * 1e3:8.1f} ms/step "
              f"(median of {args.rounds} rounds x {args.per_round}; min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})")
    ratio = med["dsrh"] / med["classification"]
    best = min(times["dsrh"]) / min(times["classification"])
    print(f"  DSRH / classification step time: {ratio:.3f}x by medians, {best:.3f}x by best rounds  "
          f"(target <= 1.3x: {'met' if ratio <= 1.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
