"""Reports: figures by SQL aggregation, a chart, a CSV, delivered to admins."""
