"""Plotly building blocks: one theme, several chart kinds, one export."""
