"""The analysis stages, grouped by what they read; each module's STAGE is its contract (stages.contract)."""
