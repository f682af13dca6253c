# embed_file(TARGET_VAR INPUT SYMBOL NAMESPACE)
# Generates a .cc defining `std::string_view <NAMESPACE>::<SYMBOL>()` with the bytes of INPUT, regenerated
# when INPUT changes. The bytes are written as a char array so any content is safe.
function(embed_file out_var input symbol ns)
  get_filename_component(abs_input ${input} ABSOLUTE)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${symbol}.cc)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${abs_input} -DOUTPUT=${out} -DSYMBOL=${symbol} -DNS=${ns}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFileRun.cmake
    DEPENDS ${abs_input} ${PROJECT_SOURCE_DIR}/cmake/EmbedFileRun.cmake
    COMMENT "Embedding ${input}")
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
