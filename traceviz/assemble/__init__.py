"""Assemblers: decoded events and source records in, the finished Timeline out.

The only code that turns them into table rows, with the column lists taken
from the model's schemas.
"""
