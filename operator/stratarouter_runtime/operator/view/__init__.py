"""The read-only view API: an aggregated API (``view.stratarouter.io/v1alpha1``) served by the operator.

The Kubernetes API server proxies ``/apis/view.stratarouter.io/...`` here (an APIService), so a user
reads an Execution's history, states and audit trail with their own credentials (``kubectl get --raw``,
``kubectl strata``), never with database credentials or a pod's token. One job per module:

* :mod:`.paths`: the group, version, resource names and URL paths (shared with the kubectl plugin).
* :mod:`.frontproxy`: who the caller is, as the API server's front proxy vouches for it.
* :mod:`.authorize`: whether that user may ``get`` the Execution (SubjectAccessReview, cached briefly).
* :mod:`.discovery`: the APIGroup / APIResourceList documents ``kubectl`` reads.
* :mod:`.status`: Kubernetes ``Status`` error answers, with the store's codes from ``state/wire.py``.
* :mod:`.reads`: the JSON endpoints (history, state, diff, audit, status).
* :mod:`.jsondiff`: the JSON diff of two checkpoints.
* :mod:`.ui`: the web timeline's static routes (its own owner).
* :mod:`.server`: the aiohttp application, TLS, and starting it beside the checkpoint API.
"""
