from integrations.fhir.mapping import *  # noqa: F403  (temporary, split in the next commit)
from integrations.fhir.mapping import _Names  # noqa: F401
