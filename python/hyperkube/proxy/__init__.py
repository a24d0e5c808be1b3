"""hyperkube.proxy: kube-proxy.

``model`` turns Services and EndpointSlices into the columnar model; the native generators
(``hyperkube._native.proxy_render_iptables`` / ``proxy_render_nftables``, core/src/proxy) write the
rules; ``backends`` applies them in one transaction per sync (iptables: upstream's layout with
partial syncs; nftables: our map-based table with element-level updates).
"""
