"""The input and output model: scenario, result, errors. Imports nothing else of connbench."""
