"""GoEmotions vendoring: checksums, TSV parsing, multi-hot, and the counts promised by the data card."""
import re
import shutil

import numpy as np
import pytest

from erv_lab import goemotions
from pathlib import Path
REPO_ROOT = Path(__file__).resolve().parents[1]
from erv_lab.labels import GOEMOTIONS


def test_label_file_matches_the_package_order():
    assert goemotions.label_names() == list(GOEMOTIONS)


def test_every_vendored_file_matches_source_md():
    sums = goemotions.expected_checksums()
    assert set(sums) >= {"train.tsv", "dev.tsv", "test.tsv", "emotions.txt", "LICENSE-CC-BY-4.0.txt"}
    goemotions.verify()  # raises on any mismatch


def test_a_tampered_file_is_refused(tmp_path):
    for name in ("SOURCE.md", "emotions.txt"):
        shutil.copy(goemotions.DATA_DIR / name, tmp_path / name)
    goemotions.verify(tmp_path, ("emotions.txt",))
    (tmp_path / "emotions.txt").write_text("admiration\n")
    with pytest.raises(goemotions.ChecksumError):
        goemotions.verify(tmp_path, ("emotions.txt",))


def test_a_missing_file_is_refused(tmp_path):
    shutil.copy(goemotions.DATA_DIR / "SOURCE.md", tmp_path / "SOURCE.md")
    with pytest.raises(goemotions.ChecksumError, match="missing"):
        goemotions.verify(tmp_path, ("test.tsv",))


def test_quoted_texts_are_parsed_with_a_csv_reader():
    rows = goemotions.read_split("dev")
    assert len(rows) == goemotions.SPLITS["dev"]
    assert all(len(r) == 3 and r[1] and all(0 <= i < 28 for i in r[1]) for r in rows)
    # a naive split('\t') would keep the CSV quoting; the reader unquotes and turns "" into "
    raw = (goemotions.DATA_DIR / "dev.tsv").read_text(encoding="utf-8").splitlines()
    quoted = [line for line in raw if line.startswith('"') and '""' in line.split('"\t')[0]]
    assert quoted, "the dev split has quoted texts with escaped quotes"
    expected = quoted[0].split('"\t')[0][1:].replace('""', '"').strip()
    assert expected in {r[0] for r in rows} and '"' in expected


def test_multi_hot_has_one_column_per_label():
    m = goemotions.multi_hot([[0, 27], [5]])
    assert m.shape == (2, 28) and m.dtype == np.float32
    assert m[0].tolist() == [1.0] + [0.0] * 26 + [1.0] and m[1].sum() == 1 and m[1, 5] == 1


def _card_table():
    text = (REPO_ROOT / "data_cards" / "goemotions.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", text, re.MULTILINE)
    return {name: [int(x.replace(",", "")) for x in counts] for _, name, *counts in rows}


def test_loaded_splits_match_the_data_card():
    ds = goemotions.load_goemotions()
    assert {s: ds[s].num_rows for s in ds} == goemotions.SPLITS
    card = _card_table()
    assert list(card) == list(GOEMOTIONS)
    for j, split in enumerate(("train", "dev", "test")):
        counts = np.asarray(ds[split]["labels"]).sum(0).astype(int)
        assert counts.tolist() == [card[n][j] for n in GOEMOTIONS], split
    multi = {s: sum(len(x) > 1 for x in ds[s]["label_ids"]) for s in ds}
    assert multi == {"train": 7102, "dev": 878, "test": 837}


def test_max_rows_takes_a_seeded_subset():
    a = goemotions.load_goemotions(("train",), max_rows=50, seed=1)["train"]["id"]
    b = goemotions.load_goemotions(("train",), max_rows=50, seed=1)["train"]["id"]
    c = goemotions.load_goemotions(("train",), max_rows=50, seed=2)["train"]["id"]
    assert a == b and a != c and len(a) == 50
