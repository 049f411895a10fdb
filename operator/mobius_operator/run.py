"""``kopf run -m mobius_operator.run``: the operator on kopf's default registry, as kopf users run operators.

    kopf run -m mobius_operator.run --standalone --all-namespaces

Importing this module registers every handler on kopf's default registry (that is its only purpose); importing
``mobius_operator`` itself registers nothing, so tests and ``mobius-operator`` use fresh registries. Settings come
from the ``MOBIUS_OPERATOR_*`` environment, as for ``mobius-operator``. Run it standalone: the chart's RBAC has no
permissions for kopf's peering objects.
"""

from __future__ import annotations

import kopf

from mobius_operator.handlers import register
from mobius_operator.settings import OperatorSettings

register(kopf.get_default_registry(), OperatorSettings())
