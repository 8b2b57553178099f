"""Draw soak.png from a soak's minutes.csv and jobs.csv (bench/soak.py).

    .venv-bench/bin/python bench/soak_plot.py OUT_DIR [--memory 1024]

matplotlib lives in the bench's own venv (``make soak-plot`` creates .venv-bench), never in the
product's dependencies.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _t(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def _f(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--memory", type=float, default=1024)
    args = ap.parse_args()
    minutes = list(csv.DictReader((args.out / "minutes.csv").open()))
    jobs = [j for j in csv.DictReader((args.out / "jobs.csv").open()) if j["phase"] == "soak"]
    fig, (mem, wall, fresh) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    x = [_t(m["minute"]) for m in minutes]
    for key, label in (
        ("cg_peak_mb", "cgroup peak in the minute"),
        ("cg_usage_mb", "cgroup usage"),
        ("cg_anon_mb", "cgroup anonymous (RSS)"),
        ("influxd_rss_mb", "influxd RSS"),
    ):
        mem.plot(x, [_f(m.get(key, "")) for m in minutes], label=label, lw=1)
    mem.axhline(args.memory, color="red", ls="--", lw=1, label="limit")
    mem.set_ylabel("MiB")
    mem.legend(loc="upper left", fontsize=8)
    mem.set_title(f"soak: {args.out.name}")
    for unit in sorted({(j["unit"], j["instance"]) for j in jobs}):
        mine = [j for j in jobs if (j["unit"], j["instance"]) == unit and j["wall_s"]]
        wall.scatter([_t(j["fired"]) for j in mine], [_f(j["wall_s"]) for j in mine], s=6,
                     label=f"{unit[0]} ({unit[1]})")  # fmt: skip
    wall.axhline(60, color="red", ls="--", lw=1, label="1m period")
    wall.axhline(20, color="orange", ls=":", lw=1, label="1m p95 goal (20 s)")
    wall.set_yscale("log")
    wall.set_ylabel("wall s (incl. lock wait)")
    wall.legend(loc="best", fontsize=7, ncol=3)
    bad = [_f(m.get("long_not_fresh") or "0") + _f(m.get("1m_not_fresh") or "0") for m in minutes]
    fresh.plot(x, bad, label="series not fresh (status)", color="black", lw=1)
    fresh.plot(x, [_f(m["load"]) for m in minutes], label="host load average", color="grey", lw=1)
    fresh.set_ylabel("count / load")
    fresh.legend(loc="upper left", fontsize=8)
    fresh.set_xlabel("simulated time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(args.out / "soak.png", dpi=90)
    print(f"wrote {args.out / 'soak.png'}")


if __name__ == "__main__":
    main()
