"""Analysis: pure functions over measurements (stats, compare, limits, capacity); no printing."""
