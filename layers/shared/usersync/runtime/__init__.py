"""Runtime: settings parsed once, AWS clients, the time budget, metrics, logging, SnapStart."""
