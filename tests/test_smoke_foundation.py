from pipeline.storage import Warehouse


def test_samples_ingest_counts(sample_warehouse: Warehouse) -> None:
    counts = {r["source"]: r["n"] for r in sample_warehouse.rows(
        "SELECT source, count(*) AS n FROM clips GROUP BY 1")}
    assert counts == {"audiocaps": 20, "clotho": 14, "clotho-aqa": 12, "laion630k": 42}
