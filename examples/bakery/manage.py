#!/usr/bin/env python3
"""Django's command-line utility for the bakery example site.

Defaults to the development settings, as real projects do: a deploy sets
DJANGO_SETTINGS_MODULE to bakery.settings.production itself.
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bakery.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
