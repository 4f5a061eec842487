"""What acts on the host: unpack, install (A/B slots, prefix journal and layout), migrate,
license state, profiles, removable media (split/join) and the demo."""
