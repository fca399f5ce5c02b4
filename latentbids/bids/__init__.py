"""BIDS input (pybids layout, filters, validation, input checks) and BIDS-Derivatives output."""
