"""Authentication, authorization and the cluster PKI (issue: security).

- :mod:`.pki`: the cluster CA and the certificates of every component.
- :mod:`.authn`: who is calling (client certs, static tokens, ServiceAccount JWTs, bootstrap tokens).
- :mod:`.rbac`: may they do it (Roles, ClusterRoles, bindings, aggregation), upstream's messages.
- :mod:`.policy`: upstream's default ClusterRoles and bindings.
"""
