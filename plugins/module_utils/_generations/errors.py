# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error of generations: the module turns it into ``fail_json``, ``edgeops-gen`` into exit 1."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class GenerationError(Exception):
    """An operation was refused or failed. ``artifact`` names the artifact at fault, if any."""

    def __init__(self, message, artifact=None, **details):
        super(GenerationError, self).__init__(message)
        self.message = message
        self.artifact = artifact
        self.details = details
