"""The Kubernetes backend: one Pod per task attempt, artifacts staged through S3/MinIO.

api.py      ClusterApi, the only place that talks to a cluster (KubeClusterApi: official client)
pod_spec.py the Pod manifest for a LaunchSpec (pure: dict in, dict out)
staging.py  the object-store side: inputs up, presigned URLs, outputs back down
backend.py  KubernetesBackend / KubernetesExecution, gluing the three together
"""
