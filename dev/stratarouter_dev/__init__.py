"""Developer tooling, not shipped: throwaway local services for tests, benchmarks and the demo.

A throwaway PostgreSQL, a Kubernetes control plane with kwok nodes and one real
node, images built without Docker, the demo driver and the chaos suite. It lives
beside the product (``dev/``), is installed into the development virtualenv by
``make install``, and is absent from the ``stratarouter-runtime`` wheel, which holds
the SDK, the operator and the CLI only.
"""
