"""replaycli's Hydra launcher, where Hydra looks for plugins (the `hydra_plugins` namespace)."""
