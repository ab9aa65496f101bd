"""The QA review app: `callaffect serve` (queue, call view, snippets, verdicts, notes, assignments)."""
