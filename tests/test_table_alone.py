"""A table asked for alone (``load(tables=[name])``) is the table a whole load makes: the work
that is left out is work no column of it reads -- on every bundled and corpus capture."""

from __future__ import annotations

import pandas as pd
import pytest
from bundled import CAPTURES as BUNDLED
from conftest import CORPUS
from test_tcp_corpus import UNREADABLE

import traceviz
from traceviz.loader import _NEEDS

FILES = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng", ".gz")
               and p.relative_to(CORPUS / "pcap").as_posix() not in UNREADABLE) + sorted(BUNDLED.glob("*.pcapng"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_table_alone_is_the_whole_loads(path):
    whole = traceviz.load(path)
    for name in _NEEDS:
        alone = traceviz.load(path, tables=[name])
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), check_exact=True,
                                      obj=f"{path.name}: {name} alone")
