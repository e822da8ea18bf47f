"""The kopf handlers of Executions, Snapshots, pods and nodes, one module per kind.

Importing a module registers its handlers; ``operator.main`` imports them all (this package imports
nothing, so a helper of one handler module can be imported without registering or importing the rest).
"""
