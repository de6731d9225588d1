import firsttoken


def test_public_api_is_pinned():
    assert sorted(firsttoken.__all__) == sorted([
        "Backend", "BackendBase", "BackendError", "BackendOptions", "ConfigError", "Constraint", "ConstraintError", "ContextOverflowError",
        "DataError", "FirstTokenError", "GenerateOptions", "Generation", "InputField", "Layout", "LlamaCpp",
        "ModelNotFoundError", "ModelSpec", "OpenAICompatible", "OutputField", "ParseError", "Prediction", "Predictor", "Region",
        "Request", "Scripted", "Signature", "Task",
        "UnreachableError", "Usage", "__version__", "build_backend", "evaluate", "fetch_only", "get_layout", "layout_names", "load",
        "models", "parse_spec", "register_backend", "register_layout",
    ])
    for name in firsttoken.__all__:
        assert hasattr(firsttoken, name), name


def test_every_error_derives_from_the_base_and_has_a_hint():
    for name in ["BackendError", "ConfigError", "ConstraintError", "ContextOverflowError", "DataError",
                 "ModelNotFoundError", "UnreachableError"]:
        err = getattr(firsttoken, name)("boom")
        assert isinstance(err, firsttoken.FirstTokenError) and err.hint and "hint:" in str(err)
    assert isinstance(firsttoken.ParseError("x", raw="r"), firsttoken.FirstTokenError)


def test_import_loads_neither_the_harness_nor_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, firsttoken; heavy = [m for m in ('firsttoken.experiments', 'matplotlib', 'llama_cpp', "
            "'openai') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    code = "import sys, firsttoken; firsttoken.evaluate; print('firsttoken.experiments' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"
