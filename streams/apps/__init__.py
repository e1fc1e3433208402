"""The apps platform: app persistence (Rocket.Chat's IPersistence) and the apps host."""
