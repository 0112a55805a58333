"""Draws the latency samples `cargo bench --bench fetch` wrote to bench-output/ as one PNG.

Left: the warm fetch against a bare GetItem on the same emulator (moto directly, and with 10 ms of
network latency). Right: herds of concurrent fetches of one expired credential, each against as many
concurrent bare GetItems. Both as cumulative distributions, so p50 and p99 can be read off.

Usage: plot_bench.py <bench-output dir> <png path>
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def samples(directory: pathlib.Path, series: str) -> list[float]:
    path = directory / f"{series}.csv"
    if not path.exists():
        return []
    return sorted(float(line) for line in path.read_text().split() if line)


def cdf(axis, values: list[float], label: str, style: str, color: str) -> None:
    if not values:
        return
    fractions = [(i + 1) / len(values) for i in range(len(values))]
    axis.step(values, fractions, style, color=color, where="post", label=label)


def main() -> None:
    directory, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    fig, (warm, herd) = plt.subplots(1, 2, figsize=(13, 5))
    for tag, color in (("moto", "tab:blue"), ("latency10ms", "tab:orange")):
        cdf(warm, samples(directory, f"warm-fetch-{tag}"), f"fetch ({tag})", "-", color)
        cdf(warm, samples(directory, f"warm-getitem-{tag}"), f"bare GetItem ({tag})", "--", color)
    warm.set_title("Warm fetch of a valid token vs a bare GetItem")
    warm.set_xlabel("latency (ms)")
    warm.set_ylabel("fraction of requests")
    warm.set_xscale("log")
    warm.legend()
    for size, color in ((10, "tab:green"), (100, "tab:red"), (1000, "tab:purple")):
        cdf(herd, samples(directory, f"herd-{size}-fetch"), f"{size} concurrent fetches", "-", color)
        cdf(herd, samples(directory, f"herd-{size}-getitem"), f"{size} bare GetItems", "--", color)
    herd.set_title("Herds on one expired credential (provider 200 ms)")
    herd.set_xlabel("latency (ms)")
    herd.set_xscale("log")
    herd.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
