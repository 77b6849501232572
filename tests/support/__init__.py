"""Test helpers: real servers on loopback (moto, fault-injecting proxy) and CLI runners."""
