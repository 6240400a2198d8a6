"""Parquet tables under a warehouse root, exposed through a DuckDB catalog."""

from pipeline.storage.warehouse import PartitionWriter, Warehouse, new_run_id

__all__ = ["PartitionWriter", "Warehouse", "new_run_id"]
