"""Adapters: one folder per wire protocol, each declared once in `unillm.adapters.registry`.

See `unillm.adapters.base` for what an adapter provides, and the registry for how a
package outside unillm adds one (the ``unillm.adapters`` entry-point group).
"""
