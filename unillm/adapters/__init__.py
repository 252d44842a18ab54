"""Adapters: one folder per wire protocol. See `unillm.adapters.base` for the protocol."""
