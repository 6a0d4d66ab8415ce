"""(map written in the next commit)"""
