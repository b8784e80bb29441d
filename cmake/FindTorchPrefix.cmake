# Points find_package(Torch) at the LibTorch inside a Python torch wheel: the project's .venv first,
# then HYPNOS_PYTHON, then python3 on PATH (the GPU machine's image). Sets CMAKE_PREFIX_PATH.
if(NOT HYPNOS_PYTHON)
  if(EXISTS ${PROJECT_SOURCE_DIR}/.venv/bin/python)
    set(HYPNOS_PYTHON ${PROJECT_SOURCE_DIR}/.venv/bin/python)
  else()
    find_program(HYPNOS_PYTHON NAMES python3 python)
  endif()
endif()
set(HYPNOS_PYTHON ${HYPNOS_PYTHON} CACHE FILEPATH "Python whose torch wheel provides LibTorch")
if(NOT Torch_DIR)
  execute_process(COMMAND ${HYPNOS_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "hypnos: '${HYPNOS_PYTHON}' cannot import torch; run scripts/setup.sh "
                        "or pass -DHYPNOS_PYTHON=/path/to/python-with-torch")
  endif()
  list(PREPEND CMAKE_PREFIX_PATH ${_torch_prefix})
endif()
