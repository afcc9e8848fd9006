using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// <c>VALIDATION_COMMAND</c> through real processes: bash scripts stand in for the user's program (jq reads the request,
/// as a user's script would). Each outcome a program can produce maps to the verdict the issue names.
/// </summary>
public sealed class CommandValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cfn-validation-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static ValidationRequest Request(string workId = "work-1") => new()
    {
        WorkId = workId,
        Input = JsonSerializer.SerializeToElement(new { code = "print(1)", n = 3 }),
        RequestedAt = 1_700_000_000_000,
    };

    private string Script(string name, string body)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, "#!/bin/bash\n" + body + "\n");
        return path;
    }

    private static CommandValidation Validation(IReadOnlyList<string> argv, int timeoutMs = 10_000) =>
        new(new ValidatorOptions { Command = argv, Timeout = TimeSpan.FromMilliseconds(timeoutMs) }, validatorId: "validator-7");

    [Fact]
    public async Task Pass_ProgramReadsTheRequestOnStdinAndItsEnvironment_VerdictPassWithItsReason()
    {
        var script = Script("pass.sh", """
            input=$(cat)
            jq -cn --argjson in "$input" --arg v "$CFN_VALIDATOR_ID" --arg w "$CFN_WORK_ID" \
              '{verdict: "pass", reason: ($in.workId + " " + ($in.input.n|tostring) + " " + $w + " " + $v)}'
            """);

        var verdict = await Validation(["bash", script]).ValidateAsync(Request("work-42"), CancellationToken.None);

        Assert.True(verdict.Passed);
        Assert.Equal("work-42 3 work-42 validator-7", verdict.Reason);
    }

    [Fact]
    public async Task Fail_ProgramSaysFail_VerdictFailWithTheProgramsReason()
    {
        var script = Script("fail.sh", """cat >/dev/null; echo '{"verdict":"fail","reason":"tests failed: 3 of 10"}'""");

        var verdict = await Validation(["bash", script]).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.Equal("tests failed: 3 of 10", verdict.Reason);
    }

    [Theory]
    [InlineData("echo 'looks fine to me'", "not JSON")]
    [InlineData("echo '[1,2]'", "must be a JSON object")]
    [InlineData("echo '{\"verdict\":\"maybe\"}'", "field \"verdict\" must be the string \"pass\" or \"fail\"")]
    [InlineData("echo '{\"verdict\":\"pass\",\"reason\":7}'", "field \"reason\" must be a string")]
    [InlineData("true", "not JSON")]
    public async Task BadOutput_NotAVerdict_FailNamingTheRule(string body, string expected)
    {
        var script = Script("bad.sh", "cat >/dev/null; " + body);

        var verdict = await Validation(["bash", script]).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.StartsWith("validation command output is not a verdict: ", verdict.Reason, StringComparison.Ordinal);
        Assert.Contains(expected, verdict.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NonZeroExit_FailWithTheExitCodeAndFirstStderrLine_EvenIfItPrintedPass()
    {
        var script = Script("exit.sh", """cat >/dev/null; echo '{"verdict":"pass"}'; echo 'boom: compiler crashed' >&2; echo 'second line' >&2; exit 3""");

        var verdict = await Validation(["bash", script]).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.Equal("validation command exited with code 3: boom: compiler crashed", verdict.Reason);
    }

    [Fact]
    public async Task Timeout_ProgramHangs_KilledWithItsChildrenAndFail()
    {
        var pids = Path.Combine(_dir, "pids");
        var script = Script("hang.sh", $"""
            sleep 60 &
            echo "$$ $!" > {pids}
            wait
            """);

        var verdict = await Validation(["bash", script], timeoutMs: 700).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.Equal("validation command timed out after 700 ms and was killed", verdict.Reason);
        var both = (await File.ReadAllTextAsync(pids)).Split(' ', StringSplitOptions.TrimEntries).Select(int.Parse).ToList();
        Assert.Equal(2, both.Count);
        Assert.True(await EventuallyAsync(() => Task.FromResult(both.All(p => !Directory.Exists($"/proc/{p}"))), TimeSpan.FromSeconds(10)),
            "the program or its child is still running");
    }

    [Fact]
    public async Task ShellMetacharacters_InAnArgument_ReachTheProgramUnchangedAndRunNothing()
    {
        var marker = Path.Combine(_dir, "injected");
        var argument = $"$(touch {marker}); `touch {marker}` | touch {marker} ; 'single' \"double\" * ~ $HOME && echo";
        var script = Script("echo-arg.sh", """cat >/dev/null; jq -cn --arg a "$1" '{verdict: "pass", reason: $a}'""");

        var verdict = await Validation(["bash", script, argument]).ValidateAsync(Request(), CancellationToken.None);

        Assert.True(verdict.Passed);
        Assert.Equal(argument, verdict.Reason);
        Assert.False(File.Exists(marker), "an argument was run by a shell");
    }

    [Fact]
    public async Task HugeOutput_MoreThanTheBound_FailWithoutBlockingTheProgram()
    {
        var script = Script("huge.sh", "cat >/dev/null; head -c 3000000 /dev/zero | tr '\\0' 'x'");

        var verdict = await Validation(["bash", script]).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.Equal($"validation command wrote more than {CommandValidation.MaxOutputBytes} bytes", verdict.Reason);
    }

    [Fact]
    public async Task MissingProgram_FailNamingIt()
    {
        var verdict = await Validation([Path.Combine(_dir, "no-such-program")]).ValidateAsync(Request(), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.StartsWith("VALIDATION_COMMAND could not start ", verdict.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancelled_ValidatorStopping_ProgramKilledAndCancellationPropagates()
    {
        var pidFile = Path.Combine(_dir, "pid");
        var script = Script("slow.sh", $"echo $$ > {pidFile}; exec sleep 60");
        using var stop = new CancellationTokenSource();

        var running = Validation(["bash", script]).ValidateAsync(Request(), stop.Token);
        Assert.True(await EventuallyAsync(() => Task.FromResult(File.Exists(pidFile) && new FileInfo(pidFile).Length > 0), TimeSpan.FromSeconds(10)));
        await stop.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        var pid = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(await EventuallyAsync(() => Task.FromResult(!Directory.Exists($"/proc/{pid}")), TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("/usr/local/bin/check", new[] { "/usr/local/bin/check" })]
    [InlineData("/opt/my tools/check --strict", new[] { "/opt/my tools/check --strict" })] // a plain value is one path, never split
    [InlineData("[\"python3\", \"/app/check.py\", \"--strict\", \"a b\"]", new[] { "python3", "/app/check.py", "--strict", "a b" })]
    public void FromEnvironment_Command_AsArgv(string value, string[] expected)
    {
        var options = ValidatorOptions.FromEnvironment(new Dictionary<string, string> { ["VALIDATION_COMMAND"] = value });

        Assert.Equal(expected, options.Command);
        Assert.Equal("command", options.Kind);
    }

    [Theory]
    [InlineData("VALIDATION_COMMAND", "[\"python3\", 7]", "VALIDATION_COMMAND must be a JSON array of strings")]
    [InlineData("VALIDATION_COMMAND", "[]", "VALIDATION_COMMAND must be a non-empty JSON array of strings")]
    [InlineData("VALIDATION_COMMAND", "[\"\"]", "VALIDATION_COMMAND must name a program")]
    [InlineData("VALIDATION_URL", "ftp://example.com/check", "VALIDATION_URL must be an absolute http:// or https:// URL")]
    [InlineData("VALIDATION_URL", "/relative/path", "VALIDATION_URL must be an absolute http:// or https:// URL")]
    [InlineData("VALIDATION_TIMEOUT_MS", "0", "VALIDATION_TIMEOUT_MS")]
    public void FromEnvironment_BadValue_ErrorNamesTheVariable(string name, string value, string expected)
    {
        var e = Assert.Throws<ValidationException>(() => ValidatorOptions.FromEnvironment(new Dictionary<string, string> { [name] = value }));

        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEnvironment_CommandAndUrl_Exclusive()
    {
        var e = Assert.Throws<ValidationException>(() => ValidatorOptions.FromEnvironment(new Dictionary<string, string>
        {
            ["VALIDATION_COMMAND"] = "/bin/true",
            ["VALIDATION_URL"] = "http://127.0.0.1:9/check",
        }));

        Assert.Equal("VALIDATION_COMMAND and VALIDATION_URL are exclusive: set one of them", e.Message);
    }

    [Fact]
    public void FromEnvironment_Nothing_BuiltInStaysTheDefault()
    {
        var options = ValidatorOptions.FromEnvironment(new Dictionary<string, string>());

        Assert.Equal("built-in", options.Kind);
        Assert.Equal(TimeSpan.FromSeconds(60), options.Timeout);
    }
}
