# The CLIP text tower, tokenizer and zero-shot heads (kernels/text,
# kernels/ops_causal, dist/clip_tokenizer, dist/text_io, dist/zeroshot,
# `tadist import --text`, `tadist zeroshot`).
tadist_unit_test(test_text test_text.c)
set_tests_properties(test_text PROPERTIES TIMEOUT 300)

# Command level: every shipped template set resolves by name, and the command
# runs under 2 ranks. A vocabulary of only the two special tokens fits the
# tiny model (every word becomes <|endoftext|>, CLIP's unk): this checks the
# plumbing, test_text checks the numbers.
set(zs ${TADIST_TEST_OUT}/zs_cmd)
file(WRITE ${zs}_vocab.json "{\"<|startoftext|>\": 98, \"<|endoftext|>\": 99}\n")
file(WRITE ${zs}_merges.txt "#version: 0.2\n")
add_test(NAME text_import COMMAND tadist import --text ${TADIST_FIXTURES}/clip_tiny_b
         -o ${zs}_model.h5)
set_tests_properties(text_import PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_SETUP text_model)
add_test(NAME text_zeroshot_shipped_templates COMMAND sh -c
    "for t in cars dtd eurosat gtsrb mnist resisc45 sun397 svhn; do \
       \"$1\" zeroshot --model ${zs}_model.h5 --vocab ${zs}_vocab.json --merges ${zs}_merges.txt \
         --classes a,b --name $t --templates $t -o ${zs}_$t.h5 || exit 1; done" sh
    $<TARGET_FILE:tadist>)
set_tests_properties(text_zeroshot_shipped_templates PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED text_model)
tadist_mpi_test(text_zeroshot_np2 2 $<TARGET_FILE:tadist> zeroshot --model ${zs}_model.h5
                --vocab ${zs}_vocab.json --merges ${zs}_merges.txt --classes a,b,c
                --templates resisc45 -o ${zs}_np2.h5)
set_tests_properties(text_zeroshot_np2 PROPERTIES FIXTURES_REQUIRED text_model)
