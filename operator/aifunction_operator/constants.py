"""Names shared by every stage: API coordinates, label keys, the field manager."""

from __future__ import annotations

GROUP = "aifn.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AIFunction"
PLURAL = "aifunctions"
SINGULAR = "aifunction"
SHORT_NAME = "aif"
CATEGORY = "ai"
CRD_NAME = f"{PLURAL}.{GROUP}"

FIELD_MANAGER = "aifn-operator"
MANAGED_BY = "aifn-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_FUNCTION = f"{GROUP}/function"
LABEL_VISIBILITY = "networking.knative.dev/visibility"

ANNOTATION_LOCAL_REPOSITORY = f"{GROUP}/local-model-repository"

KNATIVE_SERVING_API = "serving.knative.dev/v1"
KNATIVE_NAMESPACE = "knative-serving"
