"""``kubectl strata``: a kubectl plugin that reads and steers Executions as the user running it.

Every call goes through the user's own ``kubectl`` (their kubeconfig, context and credentials), so
what they may do is exactly what RBAC lets them: reads through the view API
(``kubectl get --raw /apis/view.stratarouter.io/...``), writes as ordinary resource writes
(``kubectl create -f -``, ``kubectl patch``), logs with ``kubectl logs``. docs/plugin.md has the
commands and the exit codes (:mod:`.exits`).

* :mod:`.main`: the command line and the dispatch.
* :mod:`.kubectl`: running kubectl, and its failures as exit codes.
* :mod:`.output`: tables, JSON and YAML.
* :mod:`.reads`: ``status``, ``history``, ``show``, ``diff``.
* :mod:`.writes`: ``snapshot``, ``restore``, ``suspend``, ``resume``.
* :mod:`.logs`: ``logs``.
* :mod:`.ui`: ``ui`` (``kubectl proxy`` and the web timeline's URL).
"""
