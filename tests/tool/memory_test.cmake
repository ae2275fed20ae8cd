# The memory test of the ptq command (run by ctest with cmake -P):
#   1. make_synthetic_model writes a Hugging Face Llama folder of MODEL_ARGS (default: dim
#      1024, hidden 2816, 8 layers, vocab 8000, F16: 111 M parameters, 222 MB) into
#      WORK/model-<hash of MODEL_ARGS> (regenerated only when missing: the weights come from a
#      fixed seed);
#   2. peak_rss runs `ptq quantize WORK/model --recipe 'w=int4-sym:g32,algo=rtn'
#      --out WORK/synthetic.gguf --format gguf` and fails if its peak RSS exceeds MAX_MIB;
#   3. the test passes when both exit 0 and the output file exists (it is removed afterwards).
# Variables: PTQ (the ptq executable), MAKE_MODEL, PEAK_RSS, WORK, MAX_MIB; optional
# MODEL_ARGS (a ;-list), RECIPE.
foreach(v PTQ MAKE_MODEL PEAK_RSS WORK MAX_MIB)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "memory_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED MODEL_ARGS)
  set(MODEL_ARGS --dim 1024 --hidden 2816 --layers 8 --heads 16 --vocab 8000 --dtype f16 --seed 1)
endif()
if(NOT DEFINED RECIPE)
  set(RECIPE "w=int4-sym:g32,algo=rtn")
endif()
string(MD5 args_hash "${MODEL_ARGS}")
string(SUBSTRING ${args_hash} 0 8 args_hash)
set(model_dir ${WORK}/model-${args_hash})
set(out ${WORK}/synthetic.gguf)
file(MAKE_DIRECTORY ${WORK})
if(NOT EXISTS ${model_dir}/model.safetensors OR NOT EXISTS ${model_dir}/config.json)
  execute_process(COMMAND ${MAKE_MODEL} ${model_dir} ${MODEL_ARGS} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_synthetic_model failed (${rc})")
  endif()
endif()
file(REMOVE ${out})
execute_process(
  COMMAND ${PEAK_RSS} --max-mib ${MAX_MIB} -- ${PTQ} quantize ${model_dir} --recipe ${RECIPE} --out ${out} --format gguf
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ptq quantize under peak_rss --max-mib ${MAX_MIB} failed (exit ${rc}; 3 = above the bound)")
endif()
if(NOT EXISTS ${out})
  message(FATAL_ERROR "ptq quantize exited 0 but wrote no ${out}")
endif()
file(SIZE ${out} size)
message(STATUS "ptq quantize wrote ${out} (${size} bytes) within ${MAX_MIB} MiB")
file(REMOVE ${out})
