"""Searches past what one SQL query can hold are InvalidArgument naming the limit, never Internal
(issue 10, item 9)."""
import pytest

import keel


@pytest.fixture
def ws_runs(ws):
    for i in range(3):
        with ws.start_run(experiment="limits") as run:
            run.log_params({f"p{j}": str(i) for j in range(3)})
            run.log_metric("auc", 0.5 + i / 10)
    return ws


def test_seventy_metric_terms_name_the_term_limit(ws_runs):
    flt = " and ".join(f"metrics.m{i} > 0" for i in range(70))
    with pytest.raises(keel.InvalidArgument, match="at most 50 terms"):
        ws_runs.runs.search(experiment="limits", filter=flt)


def test_fifty_terms_still_work(ws_runs):
    flt = " and ".join(["metrics.auc > 0"] * 25 + ["params.p0 != 'x'"] * 25)
    assert len(ws_runs.runs.search(experiment="limits", filter=flt)) == 3


def test_many_attribute_terms_name_the_limit(ws_runs):
    flt = " and ".join(["status = 'FINISHED'"] * 1200)
    with pytest.raises(keel.InvalidArgument, match="at most 50 terms"):
        ws_runs.runs.search(experiment="limits", filter=flt)


def test_huge_in_list_names_the_item_limit_and_quotes_a_short_excerpt(ws_runs):
    items = ", ".join(f"'{i}'" for i in range(300_000))
    with pytest.raises(keel.InvalidArgument, match="at most 10000 values") as err:
        ws_runs.runs.search(experiment="limits", filter=f"params.p0 IN ({items})")
    assert len(str(err.value)) < 1000


def test_in_list_at_the_limit_works(ws_runs):
    items = ", ".join(f"'{i}'" for i in range(10_000))
    assert len(ws_runs.runs.search(experiment="limits", filter=f"params.p0 IN ({items})")) == 3


def test_too_many_order_keys_with_terms_name_the_join_limit(ws_runs):
    flt = " and ".join(f"metrics.m{i} > 0" for i in range(40))
    order = [f"params.p{i} DESC" for i in range(30)]
    with pytest.raises(keel.InvalidArgument, match="at most 60"):
        ws_runs.runs.search(experiment="limits", filter=flt, order_by=order)
