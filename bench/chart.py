"""The picture of a run's ratios (``bench/out/ratios.png``): one small bar chart per scenario.

Each chart puts this package beside what a user would use instead, scaled
to that alternative (1.0, the dashed line): below the line is cheaper for
CPU, above it is faster for throughput. The absolute figure is written on
every bar. One row per event loop measured; the last row shows
``ratatosk serve --workers N`` against one worker.
Needs matplotlib (the ``bench`` extra); nothing else in the bench does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

OURS = "#2a7ab9"
THEIRS = "#b0b0b0"
FLOOR = "#d9d9d9"


def _bars(  # noqa: PLR0917 - one chart's parts
    axis: Any,
    title: str,
    labels: list[str],
    values: list[float],
    reference: float,
    unit: str,
    colours: list[str],
    notes: list[str] | None = None,
) -> None:
    ratios = [value / reference for value in values]
    extra = notes or [""] * len(values)
    bars = axis.bar(labels, ratios, color=colours, edgecolor="#404040", linewidth=0.6)
    axis.axhline(1.0, color="#404040", linestyle="--", linewidth=0.8)
    for bar, ratio, value, note in zip(bars, ratios, values, extra, strict=True):
        axis.annotate(
            f"{ratio:.2f}x\n{value:,.0f} {unit}{note}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    axis.set_title(title, fontsize=9)
    axis.set_ylim(0, max(ratios) * 1.35)
    axis.tick_params(axis="x", labelsize=7)
    axis.tick_params(axis="y", labelsize=7)


def draw(summary: dict[str, Any], path: Path) -> None:
    loops = list(summary["by_loop"])
    figure, axes = plt.subplots(
        len(loops) + 1, 3, figsize=(12, 3.1 * (len(loops) + 1)), squeeze=False
    )
    for row, loop in enumerate(loops):
        block = summary["by_loop"][loop]
        hook = block["webhook_server_cpu_us_per_req"]
        _bars(
            axes[row][0],
            f"webhook server CPU per request ({loop})\nvs the SDK-written handler",
            ["bare aiohttp\n(floor)", "SDK-written", "ratatosk\non aiohttp", "ratatosk\n(serve)"],
            [hook["bare_aiohttp"], hook["twilio_sdk"], hook["ratatosk_aiohttp"], hook["ratatosk"]],
            hook["twilio_sdk"],
            "µs",
            [FLOOR, THEIRS, OURS, OURS],
        )
        cpu = block["send_cpu_us_per_msg"]
        _bars(
            axes[row][1],
            f"send client CPU per message ({loop})\nvs twilio-python async",
            ["bare aiohttp\n(floor)", "twilio async", "ratatosk"],
            [cpu["raw_aiohttp"], cpu["twilio_async"], cpu["connector"]],
            cpu["twilio_async"],
            "µs",
            [FLOOR, THEIRS, OURS],
        )
        rate, share = block["send_rate_msg_per_s"], block["send_responder_core_share"]
        busiest = max(share.values())
        _bars(
            axes[row][2],
            f"send throughput ({loop}) vs twilio async\n"
            f"(the responder used at most {busiest:.0%} of a core)",
            ["bare aiohttp", "twilio async", "ratatosk"],
            [rate["raw_aiohttp"], rate["twilio_async"], rate["connector"]],
            rate["twilio_async"],
            "msg/s",
            [FLOOR, THEIRS, OURS],
        )
        axes[row][0].set_ylabel("ratio (lower CPU is better)", fontsize=7)
    rates = summary["serve_workers_rate_req_per_s"]
    counts = sorted(rates, key=int)
    last = axes[len(loops)]
    _bars(
        last[0],
        f"ratatosk serve --workers N, req/s ({summary['serve_workers_loop']})\nvs 1 worker "
        f"({summary['machine']['cpus']} cores, load generator on the same host)",
        [f"{n} worker{'s' if n != '1' else ''}" for n in counts],
        [rates[n] for n in counts],
        rates["1"],
        "req/s",
        [OURS] * len(counts),
        [f"\n{summary['serve_workers_server_cores'][n]:.2f} cores" for n in counts],
    )
    last[0].set_ylabel("ratio (higher is better)", fontsize=7)
    rss = summary["rss_growth_mb_100k"]
    last[1].axis("off")
    last[2].axis("off")
    last[1].text(
        0.0,
        0.6,
        f"RSS growth over 100,000 sends: {rss:.2f} MB (target < 5 MB)\n\n"
        f"machine: {summary['machine']['cpus']} cores, Python {summary['machine']['python']},\n"
        f"load average at the start {summary['machine']['load_average_at_start'][0]:.1f}\n"
        f"bars: medians of {summary['config']['reps']} repetitions "
        f"({summary['config']['workers_reps']} for serve --workers);\n"
        f"'cores': the CPU the workers used while answering",
        fontsize=9,
        va="center",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
