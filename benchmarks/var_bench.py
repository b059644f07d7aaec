"""Benchmark of var_foresight: tokenizer throughput, codebook lookups, and KV-cached vs recomputed sampling.

Prints a table and writes JSON (``--out FILE``). Timings are medians of ``--repeats`` runs after one warm-up,
measured in the same process; compared variants are timed alternately and their speedup is the median of
per-repeat ratios, so load from other processes hits both alike. Absolute numbers depend on the machine.

    python benchmarks/var_bench.py --out var_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from var_foresight import (
    VQVAE,
    NextScalePredictor,
    NextScalePredictorConfig,
    RecomputedNextScaleLogits,
    SamplingConfig,
    VectorQuantizeLookup,
    direct_lookup,
    sample_next_scales,
    vqvae_config,
)

PREDICTOR_PRESETS = {
    "tiny": dict(width=64, depth=2, num_heads=2, head_dim=32, mlp_width=128, condition_dim=64),
    "small": dict(width=256, depth=6, num_heads=4, head_dim=64, mlp_width=1024, condition_dim=256),
}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """Median seconds of ``first`` and ``second`` timed alternately (so load on a shared machine hits both
    alike) and the median of the per-repeat ratios ``second / first``."""
    first(), second()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b), statistics.median(y / x for x, y in zip(a, b))


@torch.no_grad()
def bench_lookup(vocab_size: int, tokens: int, repeats: int) -> dict[str, float]:
    """Nearest-code lookup alone: ``tokens`` residuals of 32 channels against a ``vocab_size`` codebook."""
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(tokens, 32, generator=g), torch.randn(vocab_size, 32, generator=g)
    vq_lookup = VectorQuantizeLookup(vocab_size, 32)
    same = torch.equal(direct_lookup(z, codebook), vq_lookup(z, codebook))
    direct_s, vq_s, ratio = paired_medians(
        lambda: direct_lookup(z, codebook), lambda: vq_lookup(z, codebook), repeats
    )
    return {
        "lookup_direct_s": direct_s,
        "lookup_vector_quantize_s": vq_s,
        "direct_lookup_speedup": ratio,
        "lookups_agree": float(same),
        "lookup_vocab_size": vocab_size,
        "lookup_tokens": tokens,
    }


@torch.no_grad()
def bench_tokenizer(preset: str, batch: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = VQVAE(vqvae_config(preset)).eval()
    h, w = model.config.image_size
    images = torch.rand(batch, 3, h, w) * 2 - 1
    indices = model.encode_indices(images)
    encode_s = median_seconds(lambda: model.encode_indices(images), repeats)
    decode_s = median_seconds(lambda: model.decode_indices(indices), repeats)
    # the quantizer alone, with each lookup, on the same latent
    latent = model.encode_latent(images)
    quantizer = model.quantize
    vq_lookup = VectorQuantizeLookup(quantizer.vocab_size, quantizer.channels)

    def encode_with(lookup):
        quantizer.lookup = lookup
        return quantizer.encode(latent)

    direct_s, vq_s, ratio = paired_medians(
        lambda: encode_with(direct_lookup), lambda: encode_with(vq_lookup), repeats
    )
    same = all(torch.equal(a, b) for a, b in zip(indices, encode_with(vq_lookup).indices))
    quantizer.lookup = direct_lookup
    return {
        "encode_images_per_s": batch / encode_s,
        "decode_images_per_s": batch / decode_s,
        "quantize_direct_s": direct_s,
        "quantize_vector_quantize_s": vq_s,
        "quantize_direct_speedup": ratio,
        "quantize_lookups_agree": float(same),
        "image_size": h,
    }


@torch.no_grad()
def bench_sampling(
    predictor_preset: str, batch: int, condition_length: int, repeats: int
) -> dict[str, float]:
    torch.manual_seed(0)
    tokenizer = VQVAE(vqvae_config("tiny")).eval()
    config = NextScalePredictorConfig(
        **PREDICTOR_PRESETS[predictor_preset],
        vocab_size=tokenizer.config.vocab_size,
        z_channels=tokenizer.config.z_channels,
        scales=tokenizer.config.scales,
    )
    predictor = NextScalePredictor(config).eval()
    condition = torch.randn(batch, condition_length, config.condition_dim)
    sampling = SamplingConfig(temperature=1.0, top_k=100, top_p=0.95)

    def cached():
        fn = predictor.logits_fn(condition)
        return sample_next_scales(fn, tokenizer.quantize, batch, sampling, torch.Generator().manual_seed(0))

    def recomputed():
        fn = RecomputedNextScaleLogits(predictor, predictor.embed_condition(condition))
        return sample_next_scales(fn, tokenizer.quantize, batch, sampling, torch.Generator().manual_seed(0))

    cached_s, recomputed_s, ratio = paired_medians(cached, recomputed, repeats)
    same = all(torch.equal(a, b) for a, b in zip(cached().indices, recomputed().indices))
    return {
        "cached_sampling_latency_s": cached_s,
        "recomputed_sampling_latency_s": recomputed_s,
        "cached_sampling_speedup": ratio,
        "cached_and_recomputed_tokens_equal": float(same),
        "tokens_per_image": tokenizer.quantize.schedule.total_tokens,
        "predictor_parameters": sum(p.numel() for p in predictor.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--tokenizer", default="tiny", choices=["tiny", "released"])
    parser.add_argument("--predictor", default="small", choices=sorted(PREDICTOR_PRESETS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--condition-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (0: torch's default). One by default: on a small shared CPU, several "
        "threads per process oversubscribe the cores and the timings of small per-scale steps become noise",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    results: dict[str, object] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
        },
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
    }
    results |= bench_tokenizer(args.tokenizer, args.batch, args.repeats)
    results |= bench_lookup(4096, args.batch * 680, args.repeats)
    results |= bench_sampling(args.predictor, args.batch, args.condition_length, args.repeats)

    rows = [
        (
            f"encode ({args.tokenizer}, {results['image_size']} px)",
            f"{results['encode_images_per_s']:.2f} images/s",
        ),
        (f"decode ({args.tokenizer})", f"{results['decode_images_per_s']:.2f} images/s"),
        ("quantize, direct lookup", f"{results['quantize_direct_s'] * 1e3:.1f} ms / batch"),
        (
            "quantize, vector-quantize-pytorch",
            f"{results['quantize_vector_quantize_s'] * 1e3:.1f} ms / batch",
        ),
        (
            "quantize speedup, direct lookup",
            f"{results['quantize_direct_speedup']:.2f}x "
            f"(same tokens: {bool(results['quantize_lookups_agree'])})",
        ),
        (
            f"lookup alone, direct ({results['lookup_tokens']} x 32 vs {results['lookup_vocab_size']} codes)",
            f"{results['lookup_direct_s'] * 1e3:.1f} ms",
        ),
        ("lookup alone, vector-quantize-pytorch", f"{results['lookup_vector_quantize_s'] * 1e3:.1f} ms"),
        (
            "lookup alone, direct speedup",
            f"{results['direct_lookup_speedup']:.2f}x (same tokens: {bool(results['lookups_agree'])})",
        ),
        (
            f"sampling, KV cache ({args.predictor})",
            f"{results['cached_sampling_latency_s'] * 1e3:.0f} ms / batch",
        ),
        ("sampling, prefix recomputed", f"{results['recomputed_sampling_latency_s'] * 1e3:.0f} ms / batch"),
        (
            "cached sampling speedup",
            f"{results['cached_sampling_speedup']:.2f}x "
            f"(same tokens: {bool(results['cached_and_recomputed_tokens_equal'])})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"var_foresight benchmark (batch {args.batch}, {torch.get_num_threads()} threads, CPU)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
