-- src_call_commits: which table files belong to which commit, and the calls left out because
-- their files and their manifest disagree (runs before the stg_* views: "src" sorts first).
-- A reprocessing rewrites a call's files one by one and its manifest last; every file's Parquet
-- footer names its commit (manifest.commit_id). While any file of a loadable call carries
-- another commit id than its manifest, the call is a commit in progress: it is not loadable in
-- this build (every stg_* view semi-joins on loadable), so its old and new rows never mix.
-- Files and manifests from before commit ids have none on either side and still agree.
create table src_file_commits as
select * from {{ file_commits }};

update src_manifests as m
set loadable = false,
    reason = 'commit in progress: table files of another commit than the manifest (reprocessing)'
where m.loadable
  and exists (
      select 1 from src_file_commits as f
      where f.call_id = m.call_id and f.call_date = m.call_date
        and f.commit_id is distinct from m.commit_id
  );
