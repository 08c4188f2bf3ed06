"""Scalar CSV logging: columns that appear later (phase-gated losses) widen the file, old rows keep theirs."""

from __future__ import annotations

import csv

from lumisurf.train.logging import ScalarLogger


def test_csv_widens_when_a_term_switches_on(tmp_path):
    path = tmp_path / "scalars.csv"
    log = ScalarLogger(path)
    log.log(1, {"loss": 1.0})
    log.log(2, {"loss": 0.5, "loss_entropy": 0.25})
    log.log(3, {"loss": 0.4})
    log.close()
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "loss_entropy"]
    assert rows[0]["loss_entropy"] == "" and float(rows[1]["loss_entropy"]) == 0.25
    assert [float(r["loss"]) for r in rows] == [1.0, 0.5, 0.4]
    resumed = ScalarLogger(path, append=True)
    resumed.log(4, {"loss": 0.3, "loss_entropy": 0.1})
    with open(path) as f:
        assert float(list(csv.DictReader(f))[-1]["loss_entropy"]) == 0.1
