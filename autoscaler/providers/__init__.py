"""Platform providers: each carries out create/list/find/stop/destroy for one platform.

``autoscaler.providers.fly`` (Fly Machines REST over httpx) and
``autoscaler.providers.digitalocean`` (droplets through python-digitalocean) both implement
``autoscaler.provider.Provider``. Import the one you need; this package imports neither, so
choosing Fly never loads the DigitalOcean library.
"""
