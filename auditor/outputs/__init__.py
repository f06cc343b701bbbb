"""Outputs: findings leave the host, each exactly once per output, in the daemon.

::

    config [[output]] ─▶ build.build_sink ─▶ Sink (file | syslog | webhook)
    store.findings ──▶ delivery.OutputRunner (own task, own connection) ──▶ Sink.send
                         └─ store.outputs: cursor advanced in the transaction that
                            records the delivery; the store is the on-disk queue

Kept free of imports so that ``auditor.config`` can use the pure helpers in
``auditor.outputs.address`` without import cycles.
"""
