"""Collectors: one module per aspect of the PC, registered in ``registry.COLLECTORS``."""
