import pytest

# The shared helpers assert as the test modules do: rewritten by pytest, so a failure shows its values.
pytest.register_assert_rewrite("tests.translate.gemini_cases")
pytest.register_assert_rewrite("tests.translate.responses_cases")
