"""The call pipeline's steps, one module each, combined into `unillm.client.Client`.

============  ==========================================================  ==============
module        steps (DESIGN.md's numbering)                               methods
============  ==========================================================  ==============
`admission`   4 the worst case, 6 the budget hold (written ahead)          ``_admit``
`routing`     7 the deployment a call goes to, and the next healthy one     ``_route``
`attempts`    7 the vendor call: deadline, retries, fallbacks, streams      ``_complete``
`caching`     5 a hit replayed at cost 0, 11 a complete answer stored       ``_serve_hit``
`settling`    8 usage, 9 cost, 10 ledger row + budget settled, 12 return     ``_finish``
============  ==========================================================  ==============

Steps 1-3 (request, resolve, rules) and the public API stay in `unillm.client`.
"""
